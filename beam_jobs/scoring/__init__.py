"""``ctrflow score``: one daily table through the serving SavedModel, scores keyed by id, with drift reports."""
