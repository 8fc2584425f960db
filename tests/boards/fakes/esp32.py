def raw_temperature():
    return 122  # Fahrenheit, as the original ESP32 reports: 50 C
