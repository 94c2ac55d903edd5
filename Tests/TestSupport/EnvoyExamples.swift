/// envoyproxy/ratelimit's README, Example 2, unchanged: what a migrating user's file looks like.
public let envoyproxyReadmeExample = """
    domain: messaging
    descriptors:
      # Only allow 5 marketing messages a day
      - key: message_type
        value: marketing
        descriptors:
          - key: to_number
            rate_limit:
              unit: day
              requests_per_unit: 5

      # Only allow 100 messages a day to any unique phone number
      - key: to_number
        rate_limit:
          unit: day
          requests_per_unit: 100

    """
