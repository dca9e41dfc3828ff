"""The diffusion process: noise schedules, forward noising q(x_t | x_0), targets and the training loss."""
