"""agno's storage contract as plans, one module per collection; shared by MongoDb and AsyncMongoDb."""
