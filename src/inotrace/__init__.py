"""inotrace: who creates inotify instances, holds watches and hits the limits."""

__version__ = "0.1.0"
