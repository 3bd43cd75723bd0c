"""Distribution on Ray (the ``pymbrl[ray]`` extra): producer actors with bounded in-flight work and
weight publication through the object store. Nothing here imports ray until it is used (where Ray
is not installed, that use raises an ImportError naming the extra), and with zero actors no agent
touches this package."""
