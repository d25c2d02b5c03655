"""Measurement: the only package that imports torch.

spec → ``runner`` (a worker process: device checks, sensors, one commit per point)
→ ``point`` (inputs → ``gate`` → ``timing`` → ``memory`` → ``energy`` → ``kernels``)
→ store. ``variants`` holds the formulas, ``compile`` the one torch.compile
caller, ``copyprobe`` the roofline's ceiling, ``provenance`` where a number came from.
"""
