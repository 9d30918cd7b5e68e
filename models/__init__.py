"""The networks (MESNet spots, AKMNet recognises), their training data, metrics and weights.

Everything here may import torch; the runtime in ``engine/`` never imports this package.
Build a network by name with ``mestream.models.registry.create_model("mesnet.demo")``.
"""
