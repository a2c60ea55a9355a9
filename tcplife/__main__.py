"""``python -m tcplife``: the same command line as the ``tcplife`` script (`tcplife.cli.main`)."""

from tcplife.cli.main import main

if __name__ == "__main__":
    main(prog_name="tcplife")
