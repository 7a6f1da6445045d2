from ntksim.cli import main

main()
