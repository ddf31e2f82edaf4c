from relaytrain_runtime.cli import main

raise SystemExit(main())
