include $(sort $(wildcard $(BR2_EXTERNAL_SCS_GATEWAY_PATH)/package/*/*.mk))
