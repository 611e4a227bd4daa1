from ttftui.cli import main

raise SystemExit(main())
