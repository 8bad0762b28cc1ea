"""heapwatch bootstrap, put first on PYTHONPATH by ``heapwatch run``.

It restores the environment the target sees (``os.environ`` shows what it would have been
without heapwatch), runs the target's own ``sitecustomize`` if it has one, then starts
heapwatch's agent from the package directory alone: nothing else of heapwatch's
environment becomes importable in the target. It never raises and never prints: failures
go to a file beside the agent's config, in the run's private directory (made fresh for
each run, never the run directory), where ``heapwatch run`` finds them.

Children (``--children all``): the bootstrap's variables stay in the process's C-level
environment, which ``exec`` passes on when no environment is given (``subprocess`` and
``os.system`` by default, multiprocessing's spawn and forkserver), so a Python child
starts its own agent the same way; only ``os.environ`` is restored (without ``unsetenv``).
A child given an explicit environment built from ``os.environ`` gets no agent, as it
would get none of heapwatch's variables. With ``--children fork`` or ``none`` the C-level
environment is restored too, as before.
"""


def _heapwatch_bootstrap() -> None:
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    env = os.environ
    config = env.get("HEAPWATCH_AGENT_CONFIG")
    pkg_parent = env.get("HEAPWATCH_PKG_DIR")
    children = env.get("HEAPWATCH_CHILDREN", "none")
    had = env.get("HEAPWATCH_HAD_PYTHONPATH")
    orig = env.get("HEAPWATCH_ORIG_PYTHONPATH", "")
    inherit = children == "all"
    data = getattr(env, "_data", None)
    encode_key = getattr(env, "encodekey", None)
    encode_value = getattr(env, "encodevalue", None)
    if data is None or encode_key is None or encode_value is None:
        inherit = False  # not CPython's os._Environ: restore everything the usual way

    def forget(key: str) -> None:
        if inherit:
            data.pop(encode_key(key), None)  # type: ignore[union-attr,misc]
        else:
            env.pop(key, None)

    def assign(key: str, value: str) -> None:
        if inherit:
            data[encode_key(key)] = encode_value(value)  # type: ignore[index,misc]
        else:
            env[key] = value

    for key in ("HEAPWATCH_AGENT_CONFIG", "HEAPWATCH_PKG_DIR", "HEAPWATCH_CHILDREN",
                "HEAPWATCH_HAD_PYTHONPATH", "HEAPWATCH_ORIG_PYTHONPATH"):
        forget(key)
    if had == "1":
        assign("PYTHONPATH", orig)
    elif had == "0":
        forget("PYTHONPATH")

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
    how = "root"
    claim = os.path.join(private, "agent.claim")
    try:
        # The first Python process of the command is the run's root; the others are children.
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
    except OSError:
        try:
            with open(claim, encoding="ascii") as f:
                root = f.read().strip()
        except OSError:
            root = ""
        if root != str(os.getpid()):  # the root itself, exec'ing a new image, stays root
            how = "exec"
        if how == "exec" and children != "all":
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
        from dataclasses import replace

        from heapwatch.agent import Agent, AgentConfig
        from heapwatch.agent.lineage import child_control

        cfg = AgentConfig.from_file(config)
        if how == "exec":
            cfg = replace(cfg, control=child_control(cfg.control, os.getpid()))
        Agent(cfg, how=how, ppid=os.getppid()).start()
    except BaseException as exc:
        try:
            name = "agent-error.txt" if how == "root" else f"agent-error-{os.getpid()}.txt"
            with open(os.path.join(private, name), "w", encoding="utf-8") as f:
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
