from ffcore.cli import main

raise SystemExit(main())
