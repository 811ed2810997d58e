"""hoist's Azure emulator (Python 3 standard library only); see ../README.md."""
