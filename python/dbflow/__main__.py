from dbflow.cli import main

main()
