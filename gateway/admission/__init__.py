"""Who may enter: room names, invites and the admission pipeline. No HTTP here."""
