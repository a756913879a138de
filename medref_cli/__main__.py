from medref_cli.cli.app import main

if __name__ == "__main__":  # not when a spawned worker process imports it (`table1 --launcher local`)
    main()
