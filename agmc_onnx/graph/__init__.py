"""Model preparation, static shapes, per-layer facts and the networkx graph of operators."""
