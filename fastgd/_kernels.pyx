# The compiled engine for any CPU of the platform (the body is in _kernels.pxi).
include "_kernels.pxi"
