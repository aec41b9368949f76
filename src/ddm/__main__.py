from ddm.cli.main import main

raise SystemExit(main())
