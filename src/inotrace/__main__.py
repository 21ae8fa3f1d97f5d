from inotrace.cli import entry

entry()
