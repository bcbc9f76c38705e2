{
  "plugins": {
    "azure-blob": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "bda1c2093c5cfa7ca76fbae0ff07fd52ef4493da2fce9f2ba761db91aea9b71d",
      "capabilities": [
        "object"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "fVFP2u+CbQnwHI4+mMZ6rJb8+A2N+3jicSiWXJkOWsPDjbe27K6hPzqbU0hYbUEHoZQmPrLEmhgi2aLBzZQuAg=="
    },
    "bigquery": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "ecd66bcd5abc55b3b8dd523a71e7c8b4e973a5be3cd0326501b26e4cca113c41",
      "capabilities": [
        "bigquery"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "mCkL1nWEsHam6mYVHxC01US7H/4foJNj7v0TrxsiJMpcl2soBcvz1M22bJHyvwGBeHqI7IbXc2byus7pTF6HCw=="
    },
    "example": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "12026477965aa910cd8d4617aaa33e32deb3dab3a636b2e74c57d7f718e1f363",
      "capabilities": [
        "object"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "W+GgqcDoUtyemD0wErkxGsyNtVHHb3t4HKoL22HeK4A3aal4/zfAOmH5O/MYv+TJhsjQhDup7fHGx8o4c3t/AA=="
    },
    "gcs": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "eb4b7be794670a9844c54e8a28bd75019357c75bb7e3ad8cc280d06f210ec849",
      "capabilities": [
        "object"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "Y63YVs1XTxelc83lfH4izQJG9MqXBTjc/pq6mtrt+taolUlITpYgLB3IOm+ZPqz4jl/LyfslgaSxHXj/nIOwCA=="
    },
    "http": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "16a6b706266d7bfdf5dba716ddee958fd90352a6cdb9d9cb7288880aeca4cb48",
      "capabilities": [
        "http"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "X8z+KO7cwQGmAT6SPZpSHwlgksLvMp84lOU1sGNtHRO+6uwkoxor6YSF5Osg4xpgEnUZMClfsDpcu7UBcLFNCA=="
    },
    "rust-jsonl": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "61cd4729a0a1b0136ea4af9aafca8545c5edf1d896b8e1c410bebeaa3a7acd21",
      "capabilities": [
        "object"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "BXuJ/6L6aCLZZ8Qo9ZEbtuLpupPLp+gTJ5zl7sRSc9B+clK+sMwOqp4s2oep0euIJs/tFY5u+IJjUC5WWs28Cw=="
    },
    "s3": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "81274740d1956aafe80ca3ff3acfb7c866268151a730eb14922dd575f30a52e8",
      "capabilities": [
        "object"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "hAk296MnLRf72cK/F+If6uBgg55LbXdcenXgW0ogcU9RdwJF66ku5V34O2NIqxcT2L2ANhkbv2GYTOsrl/ExAA=="
    },
    "snowflake": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "2dd080e70eb0492002f897c9ebca68affac0383b2d47be817644eb1c5b6223e1",
      "capabilities": [
        "snowflake"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "bWXyi1c1i8P555mHyhBBppe4kBfQ1Yc/VYUVVTdZxDaQ+3/+vq9LLls39mMgTb9C5ut1sjSfeig6JylhUnOOCg=="
    }
  }
}
