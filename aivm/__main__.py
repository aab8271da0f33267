from aivm.cli.main import main

main()
