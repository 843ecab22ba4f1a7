from lionflow.cli import main

raise SystemExit(main())
