"""What the running engine keeps per camera (``camera``) and publishes about itself (``status``)."""
