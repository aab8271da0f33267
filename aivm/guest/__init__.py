"""The guest as a workplace: ssh, ssh_config, attachments, VS Code, settings sync."""
