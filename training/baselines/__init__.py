"""Non-learned restorers the models are compared with: A-SPADE (:mod:`.aspade`) and the ideal ratio mask
oracle (:mod:`.irm`)."""
