"""What past runs measured: one record per run (``records``), the training directory
(``store``), the k-NN over records (``model``) and the per-directory learner
(``learner``) that the planner asks and every run reports to."""
