from imm.cli import main

raise SystemExit(main())
