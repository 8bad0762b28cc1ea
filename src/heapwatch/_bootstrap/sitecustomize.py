"""heapwatch bootstrap, put first on PYTHONPATH by ``heapwatch run``.

It restores the environment the target would have had (so children do not inherit the
agent), runs the target's own ``sitecustomize`` if it has one, then starts heapwatch's
agent from the package directory alone: nothing else of heapwatch's environment becomes
importable in the target. It never raises and never prints: failures go to a file beside
the agent's config, in the run's private directory, where ``heapwatch run`` finds them.
"""


def _heapwatch_bootstrap() -> None:
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    env = os.environ
    config = env.pop("HEAPWATCH_AGENT_CONFIG", None)
    pkg_parent = env.pop("HEAPWATCH_PKG_DIR", None)
    had = env.pop("HEAPWATCH_HAD_PYTHONPATH", None)
    orig = env.pop("HEAPWATCH_ORIG_PYTHONPATH", "")
    if had == "1":
        env["PYTHONPATH"] = orig
    elif had == "0":
        env.pop("PYTHONPATH", None)

    def _same(p: str) -> bool:
        try:
            return os.path.abspath(p) == here
        except Exception:
            return False

    sys.path[:] = [p for p in sys.path if not (p and _same(p))]
    _chain_sitecustomize(here)
    if not config or not pkg_parent:
        return
    private = os.path.dirname(os.path.abspath(config))  # made fresh for this run
    try:
        # The first Python process of the command takes the agent; its children don't.
        fd = os.open(os.path.join(private, "agent.claim"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
    except OSError:
        return
    try:
        import importlib.util

        pkg = os.path.join(pkg_parent, "heapwatch")
        if "heapwatch" not in sys.modules:
            spec = importlib.util.spec_from_file_location(
                "heapwatch", os.path.join(pkg, "__init__.py"), submodule_search_locations=[pkg]
            )
            if spec is None or spec.loader is None:
                raise ImportError(f"heapwatch not found in {pkg}")
            module = importlib.util.module_from_spec(spec)
            sys.modules["heapwatch"] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop("heapwatch", None)
                raise
        from heapwatch.agent import Agent, AgentConfig

        Agent(AgentConfig.from_file(config)).start()
    except BaseException as exc:
        try:
            with open(os.path.join(private, "agent-error.txt"), "w", encoding="utf-8") as f:
                f.write(f"{type(exc).__name__}: {exc}\n")
        except Exception:
            pass


def _chain_sitecustomize(here: str) -> None:
    """Run the ``sitecustomize`` the target would have run without heapwatch."""
    import importlib.machinery
    import importlib.util
    import os
    import sys

    try:
        search = [p for p in sys.path if os.path.abspath(p or ".") != here]
        spec = importlib.machinery.PathFinder.find_spec("sitecustomize", search)
        if spec is None or spec.loader is None:
            return
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        spec.loader.exec_module(module)
    except Exception as exc:  # as site.py does for a failing sitecustomize
        print(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{type(exc).__name__}: {exc}",
              file=sys.stderr)


try:
    _heapwatch_bootstrap()
except BaseException:
    pass
