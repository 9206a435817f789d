"""Loss modules: Barlow Twins, NT-Xent (SimCLR), FairDARTS zero-one."""
