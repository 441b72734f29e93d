"""The wire protocol, free of I/O: frames in, typed commands out; events to bytes."""
