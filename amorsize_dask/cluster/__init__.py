"""The Dask side: the scheduler plugin (``plugin``) and the checks of its requests
(``requests``), the client side of that protocol (``client``), partition reports from
tasks (``reporting``), the adaptive-scaling hook (``adaptive``) and the room a plan leaves
for the workers adaptive scaling adds (``growth``)."""
