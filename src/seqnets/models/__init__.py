"""The one recurrent backbone, the task objectives, and the LightningModule that joins them."""
