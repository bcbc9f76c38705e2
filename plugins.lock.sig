{
  "plugins": {
    "azure-blob": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "617e1affbdcda501b31c664430a1c8adcdb3ac6419dc83d838562feb69af59b4",
      "capabilities": [
        "object"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "fQhRAmDnDpMpSrmUQng8dRjtok4z7QZwNhFBCrDDjnmp/vD6ksxOkmQaCvc+7BVoyi7eUqWkljYTVHZwGIpEDg=="
    },
    "bigquery": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "e7c1bd3243e55ec4b37b1794a04b132e939f1958fab38a0ec7595dcfb4cf7e6a",
      "capabilities": [
        "bigquery"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "MtVYG8YhdXkFaicQglMuYCEkIEvrozDUuDnLBedacaBhPvF58be8S9vBGLJM4Gc7Ws2btIKutU+5RhnBQrnWDg=="
    },
    "clickhouse": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "73f40f2d676df5cf613f70cd983521a2d0b038fa5727c1155b7d66f3000cf119",
      "capabilities": [
        "sql"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "/jOUWvH+sv+ivXz3xQWUY998eEEDAimpXQzT7rk0Nrgr3PfogN2gnZK/KuM4chqx2sMzONc/8R13wvzyvwSaCg=="
    },
    "databricks": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "863002c89dcc03f7bbe08c8557c20edb7a57bd20621dc4890ceaf0ae789f2d0d",
      "capabilities": [
        "http"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "xJvYHTbaf9IV5RMbbkhxMl/DT2HeXPsOcuFHrmc7ilLJ7MHJYmHw6hjC3ACY0zAyr0E6Pk4D2xZIThEfhwxqCw=="
    },
    "example": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "62abd6d4fc127d8cfa6ebf6f649a687d08f72be89f6224fbbb1aefa25c02a3bd",
      "capabilities": [
        "object"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "Pmo1xRIB1Rcrhqsk1aMFBXH1VCIa0fOFGiDo+dsh0QGm6xXJE15AzsXDfzGWweHdX3sORJ3PcA+qVuDZOXqsBQ=="
    },
    "gcs": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "000952a1cc47084c11a9f0508691b41d88b02e774d065f9320424f1bb891a869",
      "capabilities": [
        "object"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "a9N2kbcqGqiwSvT1obN4za5G1mVXb92mhn57lCrdxW2whsGIWQLAviVMM5zVDjnMOqYKGOyOQjyjIJl5ubp8Bw=="
    },
    "http": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "ba0264522249281bad9d7b8695f0dacea721253f1e16ea3f6e0c84a0ae6bff33",
      "capabilities": [
        "http"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "L6Xc1zCe2WDhNKLaqK3raVNpIqB7wPhRGLvQmbjZOHK1Wwuc2XWezoonXfxifRFRznlY1xwV0Zsnji5OVZoNDw=="
    },
    "postgres": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "74582222f5e68d477dfe667aca4f3cf11aef108a1411070aa7ce887c700b5d70",
      "capabilities": [
        "sql"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "QGREbMP3epzSDhqWPwFQwiV7luKmCoQOe3Pj3qT/NXCu0aytQ7HhDOLbGA09QDUAo6Er/sqwv1Qs1xIxlo1oBA=="
    },
    "redshift": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "631d644d2a3288faa2dc997108420fddb4448f44599e03fbd3eb624d6b289414",
      "capabilities": [
        "object",
        "sql"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "lvH0uYuSNUzb3Lw8a127+qiHzqteM3J8iFBjOnYq+wF6fmep9UhWvffNInKTvX1A3OWjvu/+xSaVaY6/y56/DA=="
    },
    "rust-jsonl": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "b688de056e2115ae1a2123b079b9c7275ca04599f3d9e03c76ae88c120cb19e4",
      "capabilities": [
        "object"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "Ua7Hzk6DTTGxPTcmeoCZ3mlJFVgPtX+6yRT1a4xQWgosZ56F/GQuc0f029zXs5I5NwDtfSGi3iA+U5ymN9W4Cw=="
    },
    "s3": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "d8860c03872b75933a608bbea38d32ea74561ec6a8927b3e0bafb0402bf9855e",
      "capabilities": [
        "object"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "ErntgYtq4AApb8RmR7kl586g1mIAvDI/pjPKwfGSpAVAjSeV9qiStEgL/lkKWBxXRydoYsHAyB7EsTQvvjbxCQ=="
    },
    "snowflake": {
      "format": "sluice-plugin-signature/v1",
      "sha256": "a42ba9a7dcef77088101925d3bbe06384d5c953c2506151a9fae10aa48158094",
      "capabilities": [
        "snowflake"
      ],
      "key": "J9g2W5jBFlym2HNY5icUxH97azd6Ik24UvHE+/O/qNw=",
      "signature": "Ua8qlpR8CzaCCekliXGmzLQtaBPDs8N0Dr8IJS/8CZfcF5WENobzpuotOKx6rt58SvPfHGxTe3I1S7Z3W6lmAQ=="
    }
  }
}
