"""``python -m heapwatch``: the ``heapwatch`` command, with the same exit codes."""
from heapwatch.cli import main

try:
    main()
finally:
    # A Ctrl-C that heapwatch caught may have passed through an exec() of a string on its
    # way (a dataclass or namedtuple being made by an import it cut short). CPython then
    # remembers the KeyboardInterrupt as unhandled, and under ``python -m`` (only; the
    # ``heapwatch`` script exits as it should) ends the process by SIGINT at exit in place
    # of heapwatch's own code: 130 became -2 (measured on 3.10-3.13; 3.14 exits 130). Any
    # exec() of a string clears that memory (run_eval_code_obj); an interrupt that truly
    # goes unhandled still ends the process by SIGINT, as runpy reports it afterwards.
    exec("")
