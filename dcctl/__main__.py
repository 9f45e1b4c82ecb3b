from dcctl.cli.app import entrypoint

entrypoint()
