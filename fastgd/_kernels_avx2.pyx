# The compiled engine built with AVX2 and FMA (x86-64 only; the body is in _kernels.pxi).
include "_kernels.pxi"
