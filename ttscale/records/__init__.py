"""Records: what a bank line holds (``models``), reading and appending banks (``bank``), and the
problem sets samples are drawn for (``datasets``). The lowest layer above ``errors``: files in, typed
records out; nothing here knows about answers or policies.
"""
