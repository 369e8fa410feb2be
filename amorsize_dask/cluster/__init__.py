"""The Dask side: the scheduler plugin (``plugin``) and the checks of its requests
(``requests``), the client side of that protocol (``client``), partition reports from
tasks (``reporting``) and the adaptive-scaling hook (``adaptive``)."""
