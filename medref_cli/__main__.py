from medref_cli.cli.app import main

main()
