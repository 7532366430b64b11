"""autograd-lab grader: grades 'Autograd From Scratch' submissions against torch.autograd."""

__version__ = "0.1.0"
