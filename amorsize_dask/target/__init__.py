"""Where a call runs and what it runs: this machine or a cluster (``machine``,
``context``), its stable shape id (``fingerprint``), the function's identity
(``workload``), and the :class:`~amorsize_dask.target.target.Target` tying them to the
training directory."""
