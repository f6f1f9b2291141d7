from fkd.cli.main import main

main()
