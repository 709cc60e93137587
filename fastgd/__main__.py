from fastgd.cli import main

raise SystemExit(main())
