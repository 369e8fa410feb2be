"""From a call to a :class:`~amorsize_dask.planning.plan.Plan`: time the first items
(``sampling``), know this target's overheads (``overheads``), rank configurations
(``cost_model``), start the last items early (``speculation``), decide (``planner``)."""
