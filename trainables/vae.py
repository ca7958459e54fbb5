"""Lab "vae": the variational autoencoder of trainables/autoencoders.py (read that file).

The vae is a lab of its own only for its data: its samples are measured (val_fid) by the
reference classifier of trainables/quality.py, which `load_data` trains once per dataset on
the driver (then caches) and ships to the trials with the images. The ae has no use for it.
"""
from trainables.autoencoders import Trainer, report_figures, sample_images  # noqa: F401
from trainables.generative import load_generative_data as load_data  # noqa: F401


report_text = None  # the part of the lab contract (trainables.registry.LabModule) this lab leaves out
