from relaytrain.cli import main

raise SystemExit(main())
