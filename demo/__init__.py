"""`make demo`: aivm's main job, end to end, for a person watching."""
