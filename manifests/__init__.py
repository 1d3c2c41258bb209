"""The on-disk contract between datagen (writer) and training (reader): shards, manifests, cards."""
