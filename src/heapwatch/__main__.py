from heapwatch.cli import main

main()
