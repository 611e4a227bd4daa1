from ttftui.cli.main import main

raise SystemExit(main())
