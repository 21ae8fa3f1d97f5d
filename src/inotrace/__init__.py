"""inotrace: who creates inotify instances, holds watches and hits the limits."""

__version__ = "0.1.0"

# Here, not in exporter.py: the CLI needs the default for its --help, and
# `snapshot`/`trace` must not pay for importing the HTTP stack (under
# emulation in the kernel lane that import alone took 2-3 s per command).
DEFAULT_PORT = 9842
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
