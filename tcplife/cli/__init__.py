"""The command line: click commands over the engines and the output layer.

Owns the commands (`main`), the options they share (`options`) and ``tcplife live``
(`live`). Nothing below this package imports it.
"""
